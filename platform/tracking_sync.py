"""``python -m platform.tracking_sync FILE [--tracking-uri URI]``: send metrics that a run
could not deliver to its tracking server (written by ``platform.metric_sender``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from mlflow.tracking import MlflowClient

    from platform.metric_sender import resend
    from platform.tracking import resolve_tracking_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="the unsent_metrics*.jsonl file a run wrote")
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"error: {args.file} does not exist", file=sys.stderr)
        return 2
    sent = resend(args.file, MlflowClient(resolve_tracking_uri(args.tracking_uri)))
    print(f"sent {sent} metric values from {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
