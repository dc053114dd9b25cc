"""Everything under deploy/ is validated, not only parsed.

KubeRay resources are checked against the ``openAPIV3Schema`` of the CRD the
operator installs (``../shared/data/kuberay/crds``), made strict the way the API
server's strict field validation is: an unknown field is an error. Core kinds are
checked with the Kubernetes OpenAPI schemas of ``kubernetes-validate``. Beyond the
schemas: every RayJob runs the README's command with valid platform overrides, no
secret value is written inline, and the Dockerfiles install what ``make setup`` does.
"""

from __future__ import annotations

import copy
import functools
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import SHARED_DATA

try:
    import kubernetes_validate
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "tests/deploy/test_manifests.py needs kubernetes-validate for the core "
        "Kubernetes schemas: pip install -r deploy/requirements-validate.txt"
    ) from exc

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKER = DEPLOY / "docker"
SECRETS_EXAMPLE = DEPLOY / "secrets" / "secrets.example.yaml"
CRD_DIR = SHARED_DATA / "kuberay" / "crds"
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
# The oldest and the newest Kubernetes release the core kinds are checked against.
K8S_VERSIONS = ("1.30.0", "1.37.0")
# What every RayJob runs: the README's `ray job submit ... -- <command>`.
COMMAND_PREFIX = ["python", "-m", "platform.run", "objective=bco", "recipe=tiny"]
INSTALLING_DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.gpu")

_ENV_REFERENCE = re.compile(r"\$\{?(\w+)\}?")
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|ACCESS_KEY|CREDENTIAL", re.I)
# user:password@ in a URL, unless the password is a Kubernetes $(VAR) reference.
_CREDENTIAL_IN_URL = re.compile(r"://[^/\s:@]+:(?!\$\()[^/\s@]+@")
# The CRDs are 1-1.4 MB each: libyaml reads them ten times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_documents() -> list[tuple[str, dict[str, Any]]]:
    """(label, document) for every YAML document under deploy/."""
    documents = []
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is None:
                continue
            name = (doc.get("metadata") or {}).get("name", "?")
            label = f"{path.relative_to(REPO)}#{index} {doc.get('kind')}/{name}"
            documents.append((label, doc))
    return documents


DOCUMENTS = _load_documents()
LABELS = [label for label, _ in DOCUMENTS]
RAY_JOBS = [(label, doc) for label, doc in DOCUMENTS if doc.get("kind") == "RayJob"]


def _document(kind: str, name: str) -> dict[str, Any]:
    """A private copy of one manifest, to break in a test."""
    for _, doc in DOCUMENTS:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return copy.deepcopy(doc)
    raise LookupError(f"deploy/ has no {kind} named {name!r}; fix the test or deploy/")


# ----------------------------------------------------------------- schema validation


_COMBINATIONS = ("allOf", "anyOf", "oneOf")
_PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as plain JSON Schema, as strict as the API server.

    An object with ``properties`` and no ``additionalProperties`` refuses other keys
    (unless it sets ``x-kubernetes-preserve-unknown-fields``): the API server rejects
    unknown fields under strict field validation and silently drops them otherwise. An
    ``x-kubernetes-int-or-string`` field takes an integer or a string, a ``nullable``
    one also null. The other ``x-kubernetes-*`` keys (list types, CEL rules) are left
    to the API server.
    """
    nested = ("properties", "items", "additionalProperties", "not", *_COMBINATIONS)
    out = {key: value for key, value in schema.items() if key not in nested}
    if "properties" in schema:
        properties = schema["properties"].items()
        out["properties"] = {name: _strict(sub) for name, sub in properties}
    if isinstance(schema.get("items"), dict):
        out["items"] = _strict(schema["items"])
    if "not" in schema:
        out["not"] = _strict(schema["not"])
    for key in _COMBINATIONS:
        if key in schema:
            out[key] = [_strict(sub) for sub in schema[key]]

    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = _strict(extra)
    elif extra is not None:
        out["additionalProperties"] = extra
    elif "properties" in schema and not schema.get(_PRESERVE_UNKNOWN):
        out["additionalProperties"] = False

    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def _crd_validator(kind: str, version: str) -> jsonschema.Draft4Validator:
    """The strict validator of a KubeRay kind at one API version (``v1``)."""
    if not CRD_DIR.is_dir():
        pytest.skip(f"no KubeRay CRDs at {CRD_DIR}: the KubeRay manifests go unchecked")
    path = CRD_DIR / CRD_FILES[kind]
    crd = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version and entry.get("served", False):
            # OpenAPI 3.0 keeps draft 4's boolean exclusiveMinimum/Maximum.
            schema = _strict(entry["schema"]["openAPIV3Schema"])
            return jsonschema.Draft4Validator(schema)
    served = [entry["name"] for entry in crd["spec"]["versions"] if entry.get("served")]
    raise ValueError(
        f"{path.name} serves no version {version!r} (served: {served}); "
        "fix the manifest's apiVersion to ray.io/<one of those>"
    )


def _core_problems(doc: dict[str, Any], k8s_version: str) -> list[str]:
    """The first schema problem of a core Kubernetes object, as one line."""
    try:
        kubernetes_validate.validate(doc, k8s_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"Kubernetes {k8s_version} has no schema for {doc['apiVersion']} "
            f"{doc['kind']}: fix apiVersion/kind, or add the kind's CRD to CRD_FILES"
        ]
    except kubernetes_validate.ValidationError as error:
        return [f"Kubernetes {k8s_version}: {error.json_path}: {error.message}"]
    return []


def _custom_resource_problems(doc: dict[str, Any], version: str) -> list[str]:
    kind = doc["kind"]
    if kind not in CRD_FILES:
        return [f"ray.io kind {kind!r} has no CRD here (known: {sorted(CRD_FILES)})"]
    errors = _crd_validator(kind, version).iter_errors(doc)
    problems = [f"{e.json_path}: {e.message}" for e in sorted(errors, key=str)]
    # The CRDs leave metadata open; check it as any object's ObjectMeta.
    metadata = doc.get("metadata")
    as_config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    return problems + _core_problems(as_config_map, K8S_VERSIONS[-1])


def manifest_problems(doc: Any) -> list[str]:
    """Every schema problem of one manifest; empty when the API server takes it."""
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return ["not a Kubernetes object: it needs apiVersion and kind"]
    group, _, version = doc["apiVersion"].rpartition("/")
    if group == "ray.io":
        return _custom_resource_problems(doc, version)
    return [problem for k8s in K8S_VERSIONS for problem in _core_problems(doc, k8s)]


def test_deploy_holds_every_documented_manifest():
    kinds = sorted(doc["kind"] for _, doc in DOCUMENTS)
    expected = ("RayJob", "RayCluster", "Deployment", "Service", "StatefulSet",
                "Secret", "PersistentVolumeClaim", "ConfigMap")
    for kind in expected:
        assert kind in kinds, f"deploy/ has no {kind} any more (found: {kinds})"
    assert len(RAY_JOBS) >= 2, "deploy/kuberay/ should hold a CPU and a GPU RayJob"


@pytest.mark.parametrize("label, doc", DOCUMENTS, ids=LABELS)
def test_manifest_is_valid(label: str, doc: dict[str, Any]):
    problems = manifest_problems(doc)
    assert not problems, f"{label} would be rejected:\n  " + "\n  ".join(problems)


def _at(doc: Any, path: str) -> tuple[Any, str | int]:
    """The parent and the last key of a dotted path such as ``containers.0.image``."""
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    for part in parents:
        doc = doc[part]
    return doc, last


def _rename(doc: dict[str, Any], path: str, new_key: str) -> None:
    parent, key = _at(doc, path)
    parent[new_key] = parent.pop(key)


def _replace(doc: dict[str, Any], path: str, value: Any) -> None:
    parent, key = _at(doc, path)
    parent[key] = value


HEAD = "spec.rayClusterSpec.headGroupSpec"
CONTAINER = "spec.template.spec.containers.0"
UNEXPECTED = "was unexpected"
NOT_INTEGER = "is not of type 'integer'"
# (kind, name, how to break it, where, with what, words of the expected error)
BROKEN = [
    ("RayJob", "bco-tiny-cpu", _rename, "spec.shutdownAfterJobFinishes",
     "shutdownAfterJobFinish", f"'shutdownAfterJobFinish' {UNEXPECTED}"),
    ("RayJob", "bco-tiny-cpu", _rename, f"{HEAD}.rayStartParams", "rayStartParam",
     f"'rayStartParam' {UNEXPECTED}"),
    ("RayJob", "bco-tiny-cpu", _rename, f"{HEAD}.template.spec.containers.0.image",
     "imag", f"'imag' {UNEXPECTED}"),
    ("RayJob", "bco-tiny-cpu", _replace, "spec.backoffLimit", "0", NOT_INTEGER),
    ("RayJob", "bco-tiny-gpu", _replace, "spec.rayClusterSpec.authOptions.mode",
     "tokens", "is not one of"),
    ("RayJob", "bco-tiny-gpu", _rename, "metadata.labels", "label",
     f"'label' {UNEXPECTED}"),
    ("RayCluster", "bco-interactive", _replace, "spec.workerGroupSpecs.0.replicas",
     "two", NOT_INTEGER),
    ("Deployment", "mlflow", _replace, "spec.replicas", "1", NOT_INTEGER),
    ("Deployment", "mlflow", _rename, f"{CONTAINER}.ports", "port",
     f"'port' {UNEXPECTED}"),
    ("StatefulSet", "mlflow-postgres", _replace, f"{CONTAINER}.env", {},
     "is not of type 'array'"),
]
BROKEN_IDS = [f"{name}:{path.rsplit('.', 1)[-1]}" for _, name, _, path, _, _ in BROKEN]


@pytest.mark.parametrize("kind, name, mutate, path, argument, expected", BROKEN,
                         ids=BROKEN_IDS)
def test_broken_manifest_is_rejected(kind: str, name: str, mutate: Callable[..., None],
                                     path: str, argument: Any, expected: str):
    doc = _document(kind, name)
    mutate(doc, path, argument)
    problems = manifest_problems(doc)
    assert any(expected in problem for problem in problems), (
        f"{kind}/{name} with a broken {path} was not refused ({expected!r}): {problems}"
    )


def test_int_or_string_fields_take_both_forms():
    job = _document("RayJob", "bco-tiny-cpu")
    limits = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    limits = limits["containers"][0]["resources"]["limits"]
    for cpu in (2, "2", "1500m"):
        limits["cpu"] = cpu
        assert manifest_problems(job) == [], f"cpu limit {cpu!r} should be accepted"
    limits["cpu"] = [2]
    assert manifest_problems(job), "a list is neither an integer nor a string"


# ----------------------------------------------------------------- the RayJob command


def _key(word: str) -> str:
    return word.partition("=")[0]


def _readme_job_command() -> list[str]:
    """The words after ``ray job submit ... --`` in the README's "On a Ray cluster"."""
    text = (REPO / "README.md").read_text()
    pattern = r"ray job submit [^\n]*-- \\\n\s*(python -m platform\.run[^\n]*)"
    match = re.search(pattern, text)
    if match is None:
        raise AssertionError(
            "README.md no longer shows `ray job submit ... -- \\` followed by "
            "`python -m platform.run ...`; update _readme_job_command to its new form"
        )
    return shlex.split(match.group(1))


@pytest.mark.parametrize("label, job", RAY_JOBS, ids=[label for label, _ in RAY_JOBS])
def test_ray_job_runs_the_readme_command(label: str, job: dict[str, Any]):
    from platform.config_loading import load_config, parse_overrides

    words = shlex.split(job["spec"]["entrypoint"])
    readme = _readme_job_command()
    assert words[: len(COMMAND_PREFIX)] == COMMAND_PREFIX, f"{label}: {words}"
    assert [_key(word) for word in words] == [_key(word) for word in readme], (
        f"{label} runs {words}, the README {readme}: same overrides, same order"
    )
    fixed = [word for word in words if "$" not in word]
    assert fixed == [word for word in readme if "$" not in word], (
        f"{label}: only the values taken from variables may differ from the README"
    )

    # A shell expands the variables before the platform sees them; any value will do.
    dummy = "http://mlflow.invalid:5000"
    overrides = [_ENV_REFERENCE.sub(dummy, word) for word in words[3:]]
    parse_overrides(overrides)  # raises ConfigError on a word that is not key=value
    load_config(overrides)  # raises ConfigError on an unknown key or a bad value


@pytest.mark.parametrize("label, job", RAY_JOBS, ids=[label for label, _ in RAY_JOBS])
def test_ray_job_entrypoint_variables_exist_where_they_are_expanded(
    label: str, job: dict[str, Any]
):
    """K8sJobMode expands the entrypoint in the submitter's shell; the head runs it."""
    spec = job["spec"]
    needed = set(_ENV_REFERENCE.findall(spec["entrypoint"]))
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode", label
    head = spec["rayClusterSpec"]["headGroupSpec"]
    containers = {
        "submitter": spec["submitterPodTemplate"]["spec"]["containers"][0],
        "head": head["template"]["spec"]["containers"][0],
    }
    for where, container in containers.items():
        missing = needed - {entry["name"] for entry in container.get("env", [])}
        assert not missing, f"{label}: the {where} container does not define {missing}"


def _ray_cluster_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for label, doc in DOCUMENTS:
        if doc["kind"] == "RayJob":
            yield label, doc["spec"]["rayClusterSpec"]
        elif doc["kind"] == "RayCluster":
            yield label, doc["spec"]


def test_ray_clusters_run_the_locked_ray_with_token_auth():
    lock = (REPO / "requirements" / "cpu.lock").read_text()
    ray_version = re.search(r"^ray==(\S+)$", lock, re.MULTILINE).group(1)
    for label, spec in _ray_cluster_specs():
        assert spec.get("rayVersion") == ray_version, f"{label}: not the lock's ray"
        # Ray 2.60 clusters want a token; KubeRay sets RAY_AUTH_MODE/RAY_AUTH_TOKEN.
        mode = spec.get("authOptions", {}).get("mode")
        assert mode == "token", f"{label}: authOptions.mode is {mode!r}, not 'token'"


# --------------------------------------------------------------------------- secrets


def _walk(node: Any) -> Iterator[tuple[str | int, Any]]:
    """Every (key, value) pair of a manifest, however deep."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield key, value
        if isinstance(value, dict | list):
            yield from _walk(value)


def inline_secret_problems(doc: dict[str, Any]) -> list[str]:
    """Secret values written into a manifest instead of read from a Secret."""
    problems = []
    for key, value in _walk(doc):
        if key != "env" or not isinstance(value, list):
            continue
        for entry in value:
            if "value" in entry and _SECRET_NAME.search(entry["name"]):
                problems.append(f"env {entry['name']} is written inline: read it with "
                                "valueFrom.secretKeyRef from a Secret")
    for _, value in _walk(doc):
        if isinstance(value, str) and _CREDENTIAL_IN_URL.search(value):
            problems.append(f"{value!r} embeds a password: write $(VAR), VAR being an "
                            "env entry that reads a Secret")
    return problems


@pytest.mark.parametrize("label, doc", DOCUMENTS, ids=LABELS)
def test_no_secret_value_is_written_inline(label: str, doc: dict[str, Any]):
    if doc["kind"] == "Secret":
        assert label.startswith(str(SECRETS_EXAMPLE.relative_to(REPO))), (
            f"{label}: Secrets live in {SECRETS_EXAMPLE.name} or outside the repository"
        )
        assert "data" not in doc, f"{label}: write placeholders under stringData"
        for key, value in doc["stringData"].items():
            assert "CHANGE-ME" in value, f"{label}: {key} is no CHANGE-ME placeholder"
        return
    problems = inline_secret_problems(doc)
    assert not problems, f"{label}:\n  " + "\n  ".join(problems)


def test_inline_secret_check_catches_secrets():
    env = [{"name": "MLFLOW_TRACKING_PASSWORD", "value": "hunter2"},
           {"name": "STORE", "value": "postgresql://mlflow:hunter2@db/mlflow"},
           {"name": "SAFE", "value": "postgresql://mlflow:$(PASSWORD)@db/mlflow"}]
    problems = inline_secret_problems({"spec": {"containers": [{"env": env}]}})
    assert len(problems) == 2, problems


def test_every_secret_reference_has_an_example():
    examples = {
        (doc["metadata"]["name"], key)
        for doc in yaml.safe_load_all(SECRETS_EXAMPLE.read_text())
        for key in doc["stringData"]
    }
    referenced = {
        (value["name"], value["key"])
        for _, doc in DOCUMENTS
        for key, value in _walk(doc)
        if key == "secretKeyRef"
    }
    assert referenced, "no manifest reads a Secret: the MLflow and Ray pods should"
    missing = sorted(referenced - examples)
    assert not missing, f"{SECRETS_EXAMPLE.name} lacks (Secret, key) {missing}"


# ----------------------------------------------------------------------- Dockerfiles


def _make_variables(text: str) -> dict[str, str]:
    pattern = re.compile(r"^(\w+)\s*[:?]?=\s*(.*)$", re.MULTILINE)
    return {name: value.strip() for name, value in pattern.findall(text)}


def _stamp_recipe() -> list[str]:
    """The Makefile's $(STAMP) recipe, one expanded command per line."""
    text = (REPO / "Makefile").read_text()
    variables = _make_variables(text)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$(STAMP):"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        for _ in range(5):  # variables name variables: $(PY) is $(VENV)/bin/python
            line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), line)
        recipe.append(line.strip())
    return recipe


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            instructions.append((instruction.upper(), arguments.strip()))
    return instructions


def _pip_installs(commands: list[str]) -> list[list[str]]:
    return [shlex.split(command) for command in commands if "-m pip install" in command]


@pytest.mark.parametrize("name", INSTALLING_DOCKERFILES)
def test_dockerfile_installs_like_make_setup(name: str):
    expected = _pip_installs(_stamp_recipe())
    assert len(expected) >= 4, f"the Makefile's recipe has no pip installs: {expected}"
    runs = [arguments for instruction, arguments in _instructions(DOCKER / name)
            if instruction == "RUN"]
    commands = [part.strip() for run in runs for part in run.split("&&")]
    assert _pip_installs(commands) == expected, (
        f"deploy/docker/{name} must run the Makefile's $(STAMP) pip commands, in order"
    )
    venv = re.compile(r"python3(\.11)? -m venv \.venv")
    assert any(venv.fullmatch(command) for command in commands), f"{name}: no .venv"


DOCKERFILES = sorted(path.name for path in DOCKER.glob("Dockerfile.*")
                     if not path.name.endswith(".dockerignore"))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copies_only_repository_paths(name: str):
    ignore_file = DOCKER / f"{name}.dockerignore"
    lines = ignore_file.read_text().splitlines()
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for instruction, arguments in _instructions(DOCKER / name):
        if instruction not in ("COPY", "ADD") or "--from=" in arguments:
            continue
        words = [word for word in shlex.split(arguments) if not word.startswith("--")]
        for source in words[:-1]:
            path = source.rstrip("/")
            assert path not in (".", "", "*"), f"{name} copies the whole build context"
            assert (REPO / path).exists(), f"{name} copies {source}: no such path"
            assert path in admitted, (
                f"{ignore_file.name} leaves out {source}, which {name} copies: "
                f"add the line !{path}"
            )


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition("/")[2].partition(":")
    return bool(name) and any(char.isdigit() for char in tag) and tag != "latest"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_base_images_are_pinned(name: str):
    for instruction, arguments in _instructions(DOCKER / name):
        if instruction == "FROM":
            image = arguments.split()[0]
            assert _pinned(image), f"{name}: FROM {image} needs an exact version tag"


def test_manifest_images_are_pinned_and_built_by_the_readme():
    readme = (DEPLOY / "README.md").read_text()
    pattern = r"docker build -f deploy/docker/Dockerfile\.\w+ -t (\S+)"
    built = set(re.findall(pattern, readme))
    assert built, "deploy/README.md shows no `docker build -f ... -t <image>` command"
    for label, doc in DOCUMENTS:
        for key, value in _walk(doc):
            if key != "image":
                continue
            assert _pinned(value), f"{label}: image {value} needs an exact version tag"
            if value.startswith("registry.example.com/"):
                assert value in built, f"{label}: deploy/README.md never builds {value}"
