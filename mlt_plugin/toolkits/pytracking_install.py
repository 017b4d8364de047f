"""`mlt pytracking-install PYTRACKING_DIR`: make MLT a pytracking tracker named ``mlt``.

Writes, in a pytracking checkout (PYTRACKING_DIR is the checkout root or its ``pytracking/`` package)::

    pytracking/tracker/mlt/__init__.py        get_tracker_class() -> tracker_wrappers.pytracking.PytrackingMLT
    pytracking/parameter/mlt/__init__.py
    pytracking/parameter/mlt/<set>.py         parameters() -> our TrackerParams, one file per parameter set

The files only import the installed ``mlt_plugin`` / ``tracker_wrappers`` packages, so run pytracking
with the Python that has MLT installed; MLT's parameter sets are loaded by file location, so
pytracking's own ``parameter`` package (first on sys.path inside ``pytracking/``) never shadows them.
The command prints pytracking's own set-up steps (requirements, ``local.py``); then, in
``pytracking/``: ``python run_tracker.py mlt default --dataset_name otb``. A file that exists with other content (e.g. edited parameters) is left alone
and the command stops, unless ``--force``.
"""
from pathlib import Path

from mlt_plugin.files import write_text_atomic
from mlt_plugin.params import parameter_set_names

MARKER = "Written by `mlt pytracking-install`"

TRACKER_INIT = '''"""MLT for pytracking. {marker}.

The tracker itself is the installed mlt_plugin package (pip install -e <MLT repo>); this file only
points pytracking to it. Run pytracking with the Python environment that has MLT installed.
"""


def get_tracker_class():
    from tracker_wrappers.pytracking import PytrackingMLT

    return PytrackingMLT
'''

PARAMETER_INIT = '"""MLT parameter sets for pytracking. {marker}."""\n'

PARAMETER_FILE = '''"""MLT parameter set '{name}' for pytracking. {marker}; edit freely
(`mlt pytracking-install` then leaves this file alone unless given --force).

Fields: parameter/mlt/paper.py in the MLT repository declares them all (e.g. params.device = "cuda:0",
params.weights = "/path/to/weights.safetensors").
"""
from tracker_wrappers.pytracking import pytracking_parameters


def parameters():
    params = pytracking_parameters("{name}")
    return params
'''


def package_dir(path) -> Path:
    """The ``pytracking`` package folder of a checkout (given the checkout root or the package itself)."""
    path = Path(path).expanduser().resolve()
    for candidate in (path / "pytracking", path):
        if (candidate / "tracker").is_dir() and (candidate / "parameter").is_dir():
            return candidate
    raise FileNotFoundError(
        f"{path} is not a pytracking checkout: expected pytracking/tracker/ and pytracking/parameter/ in it "
        "(git clone https://github.com/visionml/pytracking)"
    )


def planned_files(param_sets) -> dict:
    """{relative path: text} of the files to write."""
    files = {
        Path("tracker/mlt/__init__.py"): TRACKER_INIT.format(marker=MARKER),
        Path("parameter/mlt/__init__.py"): PARAMETER_INIT.format(marker=MARKER),
    }
    for name in param_sets:
        files[Path(f"parameter/mlt/{name}.py")] = PARAMETER_FILE.format(name=name, marker=MARKER)
    return files


def install(pytracking_dir, param_sets=None, force=False) -> list:
    """Write the tracker and parameter files; returns the written paths."""
    names = parameter_set_names()
    param_sets = list(param_sets or names)
    unknown = [p for p in param_sets if p not in names]
    if unknown:
        raise ValueError(f"unknown parameter set(s) {unknown}; choose from {', '.join(names)}")
    root = package_dir(pytracking_dir)
    files = planned_files(param_sets)
    blocked = [root / rel for rel, text in files.items()
               if (root / rel).exists() and (root / rel).read_text(errors="replace") != text]
    if blocked and not force:
        raise ValueError(f"{blocked[0]} exists with other content (your edits, or another version of MLT's file); "
                         "pass --force to overwrite it")
    written = []
    for rel, text in files.items():
        write_text_atomic(root / rel, text)
        written.append(root / rel)
    return written


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "pytracking-install",
        help="make MLT a pytracking tracker ('mlt') in a pytracking checkout",
        description="Write pytracking/tracker/mlt/__init__.py and pytracking/parameter/mlt/<set>.py into a "
        "pytracking checkout; then `python run_tracker.py mlt default --dataset_name otb` there.",
    )
    parser.add_argument("pytracking_dir", help="pytracking checkout (root or its pytracking/ package folder)")
    parser.add_argument("--params", nargs="+", metavar="SET",
                        help="parameter sets to install (default: all of " + ", ".join(parameter_set_names()) + ")")
    parser.add_argument("--force", action="store_true", help="overwrite existing files whose content differs (e.g. your edits)")
    parser.set_defaults(func=run)


NEXT_STEPS = """pytracking's own set-up, in the Python environment that has MLT installed:
  1. its requirements for running trackers:  pip install pandas jpeg4py "setuptools<80" && pip install --no-build-isolation visdom
  2. its local.py with your dataset paths:  cd {root} && python -c "from pytracking.evaluation.environment import create_default_local_file; create_default_local_file()"
     then edit {package}/evaluation/local.py (e.g. settings.otb_path = '/data/OTB100', settings.results_path = ...)
  3. run MLT:  cd {package} && python run_tracker.py mlt {first} --dataset_name otb
     (results: <results_path>/mlt/{first}/<sequence>.txt)"""


def run(args):
    written = install(args.pytracking_dir, args.params, args.force)
    for path in written:
        print(f"wrote {path}")
    sets = sorted(p.stem for p in written if p.parent.name == "mlt" and p.stem != "__init__" and "parameter" in p.parts)
    package = package_dir(args.pytracking_dir)
    print(NEXT_STEPS.format(root=package.parent, package=package, first="default" if "default" in sets else sets[0]))
    return 0
