'''Shared plumbing for experiments: config CLI (tyro), result store, figure style, progress.

Every experiment module follows one pattern::

    from dataclasses import dataclass, field
    from typing import Annotated

    from experiments._common import ConfigBase, Interval, Positive, run_experiment

    @dataclass(frozen=True)
    class Fig1(ConfigBase):
        """Figure 1: the NTK at initialization."""             # help section title

        widths: Annotated[tuple[int, ...], Positive] = (500, 10000)
        """widths n of the hidden layers"""                     # the flag's --help text

    @dataclass(frozen=True)
    class Config(ConfigBase):   # the paper's settings as defaults
        depth: Annotated[int, Interval(ge=2)] = 4
        """L: number of Dense layers (L - 1 hidden)"""
        seed: Annotated[int | None, Interval(ge=0)] = None   # rule outside "| None"
        """base random seed (None: --seed None)"""
        fig1: Fig1 = field(default_factory=Fig1)  # nested: flags stay --widths, not --fig1.widths

        def check(self):        # cross-field rules only; raise ValueError naming the flag
            if self.depth > max(self.fig1.widths):
                raise ValueError(f"--depth must not exceed max(--widths), got {self.depth}")

    QUICK = dict(fig1=dict(widths=(50,)))   # the --quick preset: overrides, nested as needed

    def run(cfg, store) -> dict[str, np.ndarray]   # pure; caches pieces via store.cached
    def plot(results, cfg) -> dict[str, Figure]    # no computation

    def main(argv=None):
        return run_experiment("name", Config, QUICK, run, plot, argv, doc=__doc__)

Each field's docstring (the string literal under it, on one line: tyro keeps the line breaks
of indented continuation lines; or ``field(metadata={"help": ...})``, or
``Annotated[..., tyro.conf.arg(help=...)]``) is its ``--help`` text. A rule in the
annotation (`Positive`, `NonNegative`, `Interval`) is checked by ``ConfigBase.__post_init__``
for every construction, from the command line or from Python, and shown in ``--help``. Flags
are the field names with dashes (``mc_samples`` -> ``--mc-samples``; tuples take several
values: ``--widths 50 100``; optional fields take ``None``); field names must be unique across
nested configs.

`run_experiment` parses the command line into a `Config`, loads a finished run when its
config matches (so re-plotting is instant), otherwise calls `run`, saves
`results/<name>/<run>.npz` + `.json` atomically with provenance, and writes the figures
(PNG + PDF) to `paper_figs/` (default settings) or `results/<name>/<run>/` (other settings).
'''

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tyro

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("THEORY_RESULTS_DIR", REPO_ROOT / "results"))
FIGS_DIR = Path(os.environ.get("THEORY_FIGS_DIR", REPO_ROOT / "paper_figs"))

# --------------------------------------------------------------------------- CLI


def flag(name: str) -> str:
    """The command-line flag of config field ``name``: ``mc_samples`` -> ``--mc-samples``."""
    return "--" + name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Rule:
    """A constraint on a config field, declared in its annotation (see `Interval`).

    It is tyro's ``help_behavior_hint`` (so ``--help`` shows it after the default) and the
    predicate that `check_fields` applies to the value (to every element of a tuple).
    """

    text: str
    test: Callable[[Any], bool]

    def __call__(self, default: str) -> str:
        return f"(default: {default}; {self.text})"


def Interval(
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Any:
    """``Annotated`` metadata: the value (each element of a tuple) lies in the interval.

    ``Annotated[float, Interval(gt=0, lt=1)]`` is checked by `check_fields` and shown in
    ``--help`` as ``in (0, 1)``. NaN fails every bound.
    """
    if (gt is not None and ge is not None) or (lt is not None and le is not None):
        raise TypeError("Interval: give at most one lower (gt/ge) and one upper (lt/le) bound")
    lo, lo_open = (gt, True) if gt is not None else (ge, False)
    hi, hi_open = (lt, True) if lt is not None else (le, False)
    if lo is None and hi is None:
        raise TypeError("Interval needs a bound")
    if hi is None:
        text = f"{'>' if lo_open else '>='} {lo:g}"
    elif lo is None:
        text = f"{'<' if hi_open else '<='} {hi:g}"
    else:
        text = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def test(v: Any) -> bool:
        ok = True
        if lo is not None:
            ok = ok and (v > lo if lo_open else v >= lo)
        if hi is not None:
            ok = ok and (v < hi if hi_open else v <= hi)
        return bool(ok)

    return tyro.conf.arg(help_behavior_hint=Rule(text, test))


Positive = Interval(gt=0)
NonNegative = Interval(ge=0)


def _rules(tp: Any) -> list[Rule]:
    """The `Rule`s in a field's annotation (also inside ``X | None``)."""
    if typing.get_origin(tp) is typing.Annotated:
        found = [getattr(m, "help_behavior_hint", None) for m in tp.__metadata__]
        return [r for r in found if isinstance(r, Rule)] + _rules(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [r for a in typing.get_args(tp) for r in _rules(a)]
    return []


def check_fields(cfg: Any) -> None:
    """Apply every field's declared `Rule`s; raise ValueError naming the flag.

    A tuple must be non-empty and every element must pass; None (an optional field left
    unset) passes. Nested configs check themselves in their own ``__post_init__``.
    """
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        for r in _rules(hints[f.name]):
            if isinstance(value, tuple):
                if not value or not all(r.test(v) for v in value):
                    raise ValueError(
                        f"{flag(f.name)} needs one or more values, each {r.text}; "
                        f"got {_fmt(value) or 'none'}"
                    )
            elif not r.test(value):
                raise ValueError(f"{flag(f.name)} must be {r.text}, got {_fmt(value)}")


@dataclasses.dataclass(frozen=True)
class ConfigBase:
    """Base of experiment configs: checks the declared rules, then the cross-field ones.

    Subclasses override `check` (not ``__post_init__``) for rules that involve several
    fields, raising ValueError with a message that names the flag(s).
    """

    def __post_init__(self) -> None:
        check_fields(self)
        self.check()

    def check(self) -> None:
        """Cross-field rules; none by default."""


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return " ".join(str(x) for x in v)
    return str(v)


def with_overrides(cfg: Any, overrides: Mapping[str, Any] | Any) -> Any:
    """``cfg`` with ``overrides`` applied; a nested mapping updates a nested config.

    ``overrides`` may also be a finished config instance, which is returned as is.
    """
    if dataclasses.is_dataclass(overrides):
        return overrides
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for k, v in overrides.items():
        if k not in names:
            raise ValueError(f"{type(cfg).__name__} has no field {k!r}")
        cur = getattr(cfg, k)
        nested = isinstance(v, Mapping) and dataclasses.is_dataclass(cur)
        changes[k] = with_overrides(cur, v) if nested else v
    return dataclasses.replace(cfg, **changes)


C = typing.TypeVar("C")


@dataclasses.dataclass(frozen=True)
class Cli(typing.Generic[C]):
    """The command line of an experiment: how to run it, and its config.

    Field docstrings are ``--help`` texts; keep each on one line (tyro keeps the line breaks
    of an indented continuation line).
    """

    config: C
    quick: bool = False
    """start from the small smoke-test preset, not the paper's settings (flags still apply)"""
    run: str | None = None
    """name under results/<experiment>/ (None: 'default', 'quick' or 'custom-<config hash>')"""
    force: bool = False
    """recompute everything (saved pieces too), even if a finished run with this config exists"""
    plot_only: bool = False
    """re-plot from saved results; fail if there are none"""


def _description(name: str, doc: str | None) -> str | None:
    """The first paragraph of the module docstring, and where the rest is.

    tyro reflows help text (it joins lines that start with a letter), which would scramble the
    lists and formulas of a whole module docstring; those stay in ``pydoc``.
    """
    if not doc:
        return None
    first = doc.strip().split("\n\n")[0]
    return f"{first}\n\nFigures and formulas: python -m pydoc experiments.{name}"


def parse_config(
    name: str,
    config_cls: type,
    quick: Mapping[str, Any] | Any,
    argv: list[str] | None = None,
    doc: str | None = None,
) -> tuple[Any, Cli]:
    """Parse ``argv`` into a config instance (and the run options) with tyro.

    Precedence: dataclass defaults < ``--quick`` preset < explicit flags. Flags are the
    field names with dashes, without the names of nested configs (so they must be unique).
    ``--help`` lists every field with its docstring, default and rule. Invalid values (wrong
    type, unknown flag, a failed `Rule` or ``check``) exit with status 2 and a message naming
    the flag.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    preset = config_cls()
    if pre.parse_known_args(argv)[0].quick:
        preset = with_overrides(preset, quick)
    cli = tyro.cli(
        Cli[config_cls],
        args=argv,
        prog=f"python -m experiments.{name}",
        description=_description(name, doc),
        default=Cli(config=preset),
        config=(tyro.conf.OmitArgPrefixes,),
    )
    return cli.config, cli


# ----------------------------------------------------------------- atomic writes

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, and
    the file is renamed over ``path`` (``os.replace`` is atomic on POSIX). If the process
    dies midway only a ``.tmp`` file is left behind, never a partial ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def save_npz_atomic(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """``np.savez`` into ``path`` atomically (see `atomic_write_bytes`)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def save_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
    return atomic_write_bytes(path, (text + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# -------------------------------------------------------------------- provenance


def config_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=_json_default))


def config_hash(cfg: Any) -> str:
    return _hash_json(config_dict(cfg))


def _jsonable(obj: Any) -> Any:
    """A config dataclass, or a tuple/list of them and plain values, as JSON data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__, **config_dict(obj)}
    if isinstance(obj, (tuple, list)):
        return [_jsonable(o) for o in obj]
    return json.loads(json.dumps(obj, default=_json_default))


def _hash_json(data: Any) -> str:
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit() -> dict[str, Any]:
    """HEAD's commit and whether the working tree had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("theory", "jax", "jaxlib", "numpy", "scipy", "matplotlib", "scikit-learn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def device_info() -> dict[str, Any]:
    try:
        import jax

        devs = jax.devices()
        return {
            "platform": devs[0].platform,
            "devices": [str(d) for d in devs],
            "device_kind": devs[0].device_kind,
            "x64": bool(jax.config.jax_enable_x64),
        }
    except Exception as e:  # provenance must never break a run
        return {"error": repr(e)}


def provenance(cfg: Any, wall_time_s: float, name: str, run: str) -> dict[str, Any]:
    return {
        "experiment": name,
        "run": run,
        "config": config_dict(cfg),
        "config_hash": config_hash(cfg),
        "git": git_commit(),
        "versions": library_versions(),
        "device": device_info(),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        "wall_time_s": wall_time_s,
        "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
    }


# ------------------------------------------------------------------ result store


class ResultStore:
    """``results/<name>/<run>.npz`` + ``<run>.json``, and resumable pieces of a run.

    A long run calls ``store.cached(key, compute)`` for each independent piece (one width,
    one seed, ...). Each finished piece is written atomically to
    ``results/<name>/<run>/pieces-<config hash>/<key>.npz``, so an interrupted run, when
    restarted with the same config, loads the finished pieces and computes only the rest.
    """

    def __init__(
        self,
        name: str,
        run: str,
        cfg: Any,
        root: str | os.PathLike | None = None,
        force: bool = False,
    ):
        self.name, self.run, self.cfg = name, run, cfg
        self.force = force  # recompute (and overwrite) every piece, not only the assembly
        self.root = Path(root) if root is not None else RESULTS_DIR
        self.dir = self.root / name
        self.npz = self.dir / f"{run}.npz"
        self.json = self.dir / f"{run}.json"
        self.pieces = self.dir / run / f"pieces-{config_hash(cfg)}"
        self.n_loaded = 0
        self.n_computed = 0

    def cached(
        self, key: str, compute: Callable[[], Mapping[str, Any]], depends: Any = None
    ) -> dict[str, np.ndarray]:
        """``compute()``'s arrays, loaded if this piece was finished before.

        ``depends`` names what the piece depends on (a config dataclass, or a tuple of them):
        the piece is then kept under ``pieces-<hash of depends>/``, so that changing a
        setting of another figure does not discard it. Without it, the whole config counts.
        """
        if not key or any(c in key for c in "/\\") or key.startswith("."):
            raise ValueError(f"piece key must be a plain file name, got {key!r}")
        folder = self.pieces
        if depends is not None:
            folder = self.dir / self.run / f"pieces-{_hash_json(_jsonable(depends))}"
        path = folder / f"{key}.npz"
        if path.exists() and not self.force:
            self.n_loaded += 1
            return load_npz(path)
        arrays = {k: np.asarray(v) for k, v in dict(compute()).items()}
        save_npz_atomic(path, arrays)
        self.n_computed += 1
        return arrays

    def finished(self) -> bool:
        """A complete run with this exact config exists."""
        if not (self.npz.exists() and self.json.exists()):
            return False
        try:
            meta = json.loads(self.json.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return meta.get("config_hash") == config_hash(self.cfg)

    def load(self) -> dict[str, np.ndarray]:
        return load_npz(self.npz)

    def metadata(self) -> dict[str, Any]:
        return json.loads(self.json.read_text())

    def save(self, arrays: Mapping[str, Any], wall_time_s: float) -> dict[str, Any]:
        meta = provenance(self.cfg, wall_time_s, self.name, self.run)
        meta["pieces"] = {"loaded": self.n_loaded, "computed": self.n_computed}
        # The json's presence with a matching hash marks completion: drop the old one first,
        # so a crash between the two renames cannot pair new arrays with an old config.
        with contextlib.suppress(FileNotFoundError):
            self.json.unlink()
        save_npz_atomic(self.npz, arrays)
        save_json_atomic(self.json, meta)
        return meta


# ---------------------------------------------------------------------- figures

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 160,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.6,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,
    "axes.prop_cycle": (
        "cycler('color', ['#0072B2', '#D55E00', '#009E73', '#CC79A7', "
        "'#E69F00', '#56B4E9', '#F0E442', '#000000'])"
    ),
}


def pyplot():
    """matplotlib.pyplot with the headless backend and the project style applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def save_figure(fig: Any, stem: str, out_dir: str | os.PathLike) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<stem>.png`` and ``.pdf`` (atomically) and close it."""
    out = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext)
        out.append(atomic_write_bytes(Path(out_dir) / f"{stem}.{ext}", buf.getvalue()))
    pyplot().close(fig)
    return out


# --------------------------------------------------------------------- progress


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm progress bar on stderr (hidden when THEORY_NO_PROGRESS is set)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", bool(os.environ.get("THEORY_NO_PROGRESS")))
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


# ------------------------------------------------------------------- the driver


def default_run_name(cfg: Any, config_cls: type, quick: Mapping[str, Any] | Any) -> str:
    """'default' for the paper's settings, 'quick' for the preset, else 'custom-<hash>', so
    a run with other flags never overwrites the paper's results."""
    if cfg == config_cls():
        return "default"
    if cfg == with_overrides(config_cls(), quick):
        return "quick"
    return f"custom-{config_hash(cfg)[:8]}"


def figure_dir(name: str, run: str, cfg: Any, config_cls: type) -> Path:
    """Default-settings runs write the committed figures; anything else stays in results/."""
    if run == "default" and cfg == config_cls():
        return FIGS_DIR
    return RESULTS_DIR / name / run


def run_experiment(
    name: str,
    config_cls: type,
    quick: Mapping[str, Any] | Any,
    run: Callable[[Any, ResultStore], Mapping[str, Any]],
    plot: Callable[[Mapping[str, np.ndarray], Any], Mapping[str, Any]],
    argv: list[str] | None = None,
    doc: str | None = None,
    summary: Callable[[Mapping[str, np.ndarray], Any], Mapping[str, Any]] | None = None,
) -> Path:
    """Parse the CLI, compute (or load) the results, save them, and write the figures.

    Beside the figures goes ``<name>_settings.json``: the run's config and provenance, plus
    ``summary(results, cfg)`` (the numbers a reader checks the figures against), if given.
    """
    cfg, cli = parse_config(name, config_cls, quick, argv, doc)
    run_name = cli.run or default_run_name(cfg, config_cls, quick)
    if not run_name or any(c in run_name for c in "/\\") or run_name.startswith("."):
        print(f"error: --run must be a plain name, got {run_name!r}", file=sys.stderr)
        raise SystemExit(2)
    if cli.plot_only and cli.force:
        print("error: --plot-only and --force contradict each other", file=sys.stderr)
        raise SystemExit(2)
    store = ResultStore(name, run_name, cfg, force=cli.force)
    if cli.plot_only and not store.finished():
        print(
            f"error: --plot-only: no finished run {store.npz} for this config; run without "
            "--plot-only first",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if store.finished() and not cli.force:
        print(f"[{name}] loading finished run {store.npz}", file=sys.stderr)
        then, now = store.metadata().get("git", {}).get("commit"), git_commit()["commit"]
        if then and now and then != now:
            print(
                f"[{name}] note: these results were computed at commit {then[:10]}, the code "
                f"is now at {now[:10]}; pass --force to recompute",
                file=sys.stderr,
            )
        results = store.load()
    else:
        t0 = time.perf_counter()
        results = {k: np.asarray(v) for k, v in dict(run(cfg, store)).items()}
        wall = time.perf_counter() - t0
        store.save(results, wall)
        print(
            f"[{name}] computed in {wall:.1f} s ({store.n_computed} pieces computed, "
            f"{store.n_loaded} loaded) -> {store.npz}",
            file=sys.stderr,
        )
    out_dir = figure_dir(name, run_name, cfg, config_cls)
    figs = plot(results, cfg)
    for stem, fig in figs.items():
        for p in save_figure(fig, stem, out_dir):
            print(f"[{name}] wrote {p}", file=sys.stderr)
    # The figures' settings and provenance beside them (results/ is not committed; this is).
    meta = store.metadata()
    if summary is not None:
        meta["summary"] = summary(results, cfg)
    p = save_json_atomic(Path(out_dir) / f"{name}_settings.json", meta)
    print(f"[{name}] wrote {p}", file=sys.stderr)
    return out_dir
