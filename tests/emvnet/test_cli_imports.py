"""The command line loads what the named command needs: `import emvnet.cli` and `emvnet enhance`'s
parser import neither torch nor the trainer or the evaluator; a listing still has every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "emvnet.training.trainer", "emvnet.evaluation.evaluate", "emvnet.net.checkpoint")


def _loaded_after(code: str) -> dict[str, bool]:
    """Which HEAVY modules a fresh interpreter has imported after running `code`."""
    probe = f"import json, sys\n{code}\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_and_parsing_enhance_stay_light() -> None:
    loaded = _loaded_after(
        "import emvnet.cli\n"
        "emvnet.cli.build_parser('enhance').parse_args(['enhance', 'a.png', 'b.png', '-o', 'x.exr'])"
    )
    assert not any(loaded.values()), loaded


def test_a_named_command_loads_its_module_and_a_listing_loads_all() -> None:
    from emvnet.cli import COMMAND_MODULES, build_parser

    assert _loaded_after("import emvnet.cli\nemvnet.cli.build_parser('eval')")["emvnet.evaluation.evaluate"]
    listing = build_parser().format_help()
    assert all(f"    {name} " in listing for name in ("enhance", "models", *COMMAND_MODULES)), listing
