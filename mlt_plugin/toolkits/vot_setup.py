"""`mlt vot-setup WORKSPACE`: register MLT in a VOT toolkit workspace.

Writes (or replaces) the ``[MLT]`` / ``[MLT-<params>]`` sections of ``WORKSPACE/trackers.ini`` and
keeps every other line of the file as it was. The entries name this Python (``python =
sys.executable``), the folder that holds the ``tracker_wrappers`` package (``paths``), the TraX
server module and a generous ``timeout``. With ``--stack``, a new workspace is first initialised with
one of the stacks shipped in ``tracker_wrappers/stacks/`` (copied into the workspace).
"""
import re
import sys
from pathlib import Path

from mlt_plugin.evaluation.running import tracker_name as section_name  # one naming rule: [MLT], [MLT-<set>]
from mlt_plugin.files import write_text_atomic
from mlt_plugin.params import parameter_set_names

SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
DEFAULT_TIMEOUT = 300


def _wrappers_dir() -> Path:
    import tracker_wrappers

    return Path(list(tracker_wrappers.__path__)[0]).resolve()


def stacks_dir() -> Path:
    return _wrappers_dir() / "stacks"


def shipped_stacks() -> dict:
    """{name: path} of the stack files shipped with MLT (name = file name without 'mlt-' and '.yaml')."""
    return {p.stem[len("mlt-"):]: p for p in sorted(stacks_dir().glob("mlt-*.yaml"))}


def code_root() -> Path:
    """The folder to put on PYTHONPATH so that `tracker_wrappers` and `mlt_plugin` import."""
    return _wrappers_dir().parent


def tracker_sections(param_sets, timeout=DEFAULT_TIMEOUT, python=None, device=None, weights=None) -> dict:
    """{section name: [(key, value), ...]} for each parameter set."""
    sections = {}
    for params in param_sets:
        name = section_name(params)
        entries = [
            ("label", name),
            ("protocol", "traxpython"),
            ("command", "tracker_wrappers.vot_trax"),
            ("python", python or sys.executable),
            ("paths", str(code_root())),
            ("timeout", str(int(timeout))),
            ("env_MLT_PARAMS", params),
        ]
        if device:
            entries.append(("env_MLT_DEVICE", device))
        if weights:
            entries.append(("env_MLT_WEIGHTS", str(Path(weights).resolve())))
        sections[name] = entries
    return sections


HEADER = (
    "; MLT entries written by `mlt vot-setup` (timeout: seconds the toolkit waits for the TraX handshake\n",
    "; and for each reply, the first of which includes loading torch and the weights).\n",
)


def merge_trackers_ini(text: str, sections: dict) -> str:
    """``text`` with the given sections replaced (or appended); all other lines kept verbatim."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        match = SECTION.match(line)
        if match:
            skipping = match.group(1).strip() in sections
        if not skipping and line.rstrip("\n") + "\n" not in HEADER:
            kept.append(line)
    out = "".join(kept).rstrip("\n")
    blocks = ["\n".join([f"[{name}]"] + [f"{key} = {value}" for key, value in entries]) + "\n"
              for name, entries in sections.items()]
    return (out + "\n\n" if out else "") + "".join(HEADER) + "\n".join(blocks)


def setup_workspace(workspace, param_sets=("default", "mt"), timeout=DEFAULT_TIMEOUT, stack=None,
                    device=None, weights=None, python=None) -> Path:
    """Register MLT in ``workspace`` (initialising it with ``stack`` first if given). Returns trackers.ini."""
    workspace = Path(workspace).resolve()
    names = parameter_set_names()
    unknown = [p for p in param_sets if p not in names]
    if unknown:
        raise ValueError(f"unknown parameter set(s) {unknown}; choose from {', '.join(names)}")
    if stack is not None:
        initialize_workspace(workspace, stack)
    elif not workspace.is_dir():
        raise FileNotFoundError(
            f"workspace folder {workspace} does not exist: create it and run `vot initialize STACK --workspace "
            f"{workspace}`, or pass --stack (one of {', '.join(shipped_stacks())}) to have it initialised"
        )
    ini = workspace / "trackers.ini"
    text = ini.read_text() if ini.is_file() else ""
    write_text_atomic(ini, merge_trackers_ini(text, tracker_sections(param_sets, timeout, python, device, weights)))
    return ini


def initialize_workspace(workspace: Path, stack: str):
    """``vot initialize`` with a shipped stack name or a stack file path, copied into the workspace."""
    if (workspace / "config.yaml").is_file():
        raise ValueError(f"workspace {workspace} is already initialised (config.yaml exists); leave out --stack")
    stacks = shipped_stacks()
    source = stacks[stack] if stack in stacks else Path(stack)
    if not source.is_file():
        raise FileNotFoundError(f"no stack {stack!r}: give a file, or one of {', '.join(stacks)}")
    from vot.workspace import Workspace

    existed = set(workspace.iterdir()) if workspace.is_dir() else None
    workspace.mkdir(parents=True, exist_ok=True)
    target = workspace / source.name
    target.write_text(source.read_text())
    try:
        Workspace.initialize(str(workspace), dict(stack=str(target), registry=["./trackers.ini"]), download=True)
    except Exception as err:  # noqa: BLE001 - the toolkit raises its own types (NetworkException, ...)
        _undo(workspace, existed)  # no half-made workspace
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(
            f"vot initialize with stack {stack!r} failed ({type(err).__name__}: {reason}); nothing was left in "
            f"{workspace}. A stack that downloads its dataset needs the internet; offline, use --stack local with "
            "your own WORKSPACE/sequences/list.txt") from None


def _undo(workspace: Path, existed):
    """Remove what initialize_workspace created: the whole folder if it was new, else only new entries."""
    import shutil

    if existed is None:
        shutil.rmtree(workspace, ignore_errors=True)
        return
    for entry in set(workspace.iterdir()) - existed:
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()


def add_parser(subparsers):
    stacks = ", ".join(shipped_stacks())
    parser = subparsers.add_parser(
        "vot-setup",
        help="register MLT in a VOT toolkit workspace (writes/merges WORKSPACE/trackers.ini)",
        description="Write the [MLT] (and [MLT-<params>]) entries into WORKSPACE/trackers.ini, keeping other "
        "trackers' entries. The entries run this Python with the TraX server tracker_wrappers.vot_trax. "
        f"--stack initialises a new workspace first with a shipped stack ({stacks}) or a stack file; "
        "the shipped stacks use experiment classes that work for single-target trackers in vot-toolkit 0.9.0.",
    )
    parser.add_argument("workspace", help="VOT workspace folder")
    parser.add_argument("--params", nargs="+", default=["default", "mt"], metavar="SET",
                        help="parameter sets to register, any of: " + ", ".join(parameter_set_names())
                        + " (default: default mt; section MLT for 'default', MLT-<set> otherwise)")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                        help=f"seconds the toolkit waits for each reply, start-up included (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--stack", help=f"initialise a new workspace with this stack first ({stacks}, or a file)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.set_defaults(func=run)


def run(args):
    ini = setup_workspace(args.workspace, args.params, args.timeout, args.stack, args.device, args.weights)
    names = [section_name(p) for p in args.params]
    print(f"wrote {', '.join(names)} to {ini}")
    print(f"next: cd {ini.parent} && vot evaluate {names[0]} && vot analysis {names[0]}")
    return 0
