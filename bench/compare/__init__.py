"""Side-by-side training benchmark of this platform against TRL's trainers.

The same model, data, sequence lengths, batch size, optimizer, learning rate, beta and seed
go to both systems; runs alternate (A B A B) so that background load on the machine hits
both alike. ``python -m bench.compare`` runs it and appends one JSON line per run to
``bench/results/compare.jsonl``; ``bench/README.md`` explains the columns.

TRL runs in its own environments (``make setup-trl``): ``.venv-trl`` holds the current TRL
release (KTO and DPO trainers) and ``.venv-trl-bco`` the last release that still ships the
BCO trainer. The scripts that run there (``trl_runner.py``, ``trl_parity.py``) import only
TRL and the standard library, never this repository: its package ``platform`` would shadow
the standard library's module of that name.
"""
