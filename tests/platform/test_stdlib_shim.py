"""The package ``platform`` must keep the standard library's ``platform`` API working."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

import platform

REPO = Path(__file__).resolve().parents[2]


def _stdlib_platform():
    path = Path(sysconfig.get_path("stdlib")) / "platform.py"
    spec = importlib.util.spec_from_file_location("_reference_platform", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_this_is_the_project_package():
    assert Path(platform.__file__).resolve().parent == REPO / "platform"


def test_every_public_stdlib_name_is_exported():
    reference = _stdlib_platform()
    public = {name for name in vars(reference) if not name.startswith("_")}
    missing = sorted(name for name in public if not hasattr(platform, name))
    assert missing == []


def test_stdlib_functions_give_the_stdlib_answers():
    reference = _stdlib_platform()
    for name in ("system", "machine", "node", "release", "version", "python_version",
                 "python_implementation", "platform", "architecture", "libc_ver",
                 "processor", "python_version_tuple"):
        assert getattr(platform, name)() == getattr(reference, name)(), name
    assert tuple(platform.uname()) == tuple(reference.uname())


def test_libraries_that_call_platform_import_and_work():
    # Each of these calls platform.* at import or in the call below.
    code = (
        "import platform, ray, torch, mlflow, transformers, pydantic, uuid;"
        "assert platform.__file__.endswith('platform/__init__.py');"
        "print(platform.system(), torch.__version__, ray.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Linux ")


def test_stdlib_platform_in_ray_workers(ray_cluster):
    ray = ray_cluster

    @ray.remote(num_cpus=0.1)
    def probe():
        import platform as worker_platform
        import platform.config  # noqa: F401 -- a submodule must import on the worker

        return worker_platform.system(), worker_platform.python_version(), \
            worker_platform.__file__

    system, version, path = ray.get(probe.remote())
    assert (system, version) == (platform.system(), platform.python_version())
    assert path.endswith("platform/__init__.py")
