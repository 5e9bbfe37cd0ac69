"""Dataset catalog, loaders and validation (RECIPE.md §2 data, §7 benchmarks).

Every loader returns one schema: ``problem_id`` (str, "<source>/<original id or row>"),
``problem`` (str, no instruction suffix), ``answer`` (str, the first accepted form),
``answers`` (list[str], every accepted form; ``[answer]`` when single), ``source`` (str), plus
every source column not mapped into the schema. Catalog: ``data/catalog.toml``; conventions:
``data/README.md``. Local files take precedence over the hub: under ``$POLARIS_DATA_DIR`` when it
is set, else under the repository's git-ignored ``data/local/``. The hub is tried only when it
answers (a 3-second check, once per process); offline, a run says what it lacks before step 01.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from polaris_lib.data.schema import ANSWER_PARSERS, normalise_frame, to_schema, validate
from polaris_lib.data.verl import read_verl

log = logging.getLogger(__name__)

CATALOG_PATH = Path(__file__).resolve().parents[2] / "data" / "catalog.toml"
LOCAL_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "local"
"""The repository's own place for local dataset files (git-ignored; see data/README.md)."""
DATA_DIR_ENV = "POLARIS_DATA_DIR"
FORMATS = ("parquet", "jsonl", "verl")
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class DataUnavailableError(RuntimeError):
    """A dataset has no local copy and the hub cannot be reached."""


@dataclass(frozen=True)
class CatalogEntry:
    """One dataset of data/catalog.toml (field meanings are documented in that file)."""

    name: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    local: str | None = None
    local_format: str | None = None
    hub: str | None = None
    hub_config: str | None = None
    hub_split: str = "train"
    columns: dict = field(default_factory=dict)
    hub_columns: dict | None = None
    id_column: str | None = None
    hub_id_column: str | None = None
    answer_parser: str | None = None
    eval_k: int | None = None
    eval_k_source: str | None = None
    generator: str | None = None
    role: str = "eval"

    def __post_init__(self):
        where = f"data/catalog.toml [datasets.{self.name}]"
        if not (self.local or self.hub or self.generator):
            raise ValueError(f"{where}: give at least one of local, hub or generator")
        if self.local and self.local_format not in FORMATS:
            raise ValueError(
                f"{where}: local_format must be one of {FORMATS}, got {self.local_format!r}"
            )
        if self.answer_parser and self.answer_parser not in ANSWER_PARSERS:
            raise ValueError(
                f"{where}: unknown answer_parser {self.answer_parser!r}; known: {sorted(ANSWER_PARSERS)}"
            )
        if self.eval_k is not None and self.eval_k < 1:
            raise ValueError(f"{where}: eval_k must be >= 1, got {self.eval_k}")
        if self.eval_k_source not in (None, "paper", "kit"):
            raise ValueError(f"{where}: eval_k_source must be 'paper' or 'kit'")


def _read_catalog(path: Path = CATALOG_PATH) -> dict[str, CatalogEntry]:
    with open(path, "rb") as f:
        raw = tomllib.load(f)["datasets"]
    return {
        name: CatalogEntry(name=name, **{**spec, "aliases": tuple(spec.get("aliases", ()))})
        for name, spec in raw.items()
    }


def list_datasets() -> list[str]:
    """Names of the catalog's datasets, in catalog order."""
    return list(_read_catalog())


def catalog_entry(name: str) -> CatalogEntry:
    """The catalog entry for a name or alias (case-insensitive)."""
    key = name.lower()
    for entry in _read_catalog().values():
        if key == entry.name or key in entry.aliases:
            return entry
    raise KeyError(
        f"unknown dataset {name!r}; the catalog has {list_datasets()} (data/catalog.toml)"
    )


class UnknownDatasetError(ValueError):
    """A config names a dataset the catalog does not have."""


def check_names(run) -> None:
    """Every dataset a RunConfig names is in the catalog (UnknownDatasetError naming the field).

    The runner and the verl export call this while resolving the config, so `-p eval.benchmarks`
    with a typo fails before anything is written, not at step 05 after earlier results were
    set aside.
    """
    named = [("probe.dataset", run.probe.dataset), ("curation.pool", run.curation.pool)]
    named += [("eval.benchmarks", b) for b in run.eval.benchmarks]
    named += [("eval.samples", b) for b in run.eval.samples]
    for where, name in named:
        try:
            entry = catalog_entry(name)
        except KeyError:
            raise UnknownDatasetError(
                f"{where}: unknown dataset {name!r}; the catalog has {', '.join(list_datasets())} "
                "(data/catalog.toml)"
            ) from None
        if entry.generator and run.toy is None:
            raise UnknownDatasetError(
                f"{where}: {name!r} is generated from the toy world, which only preset 'tiny' has"
            )


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local data directory: the argument, else $POLARIS_DATA_DIR, else the repository's
    data/local/ when it exists, else None."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if chosen is None and LOCAL_DATA_DIR.is_dir():
        return LOCAL_DATA_DIR
    return Path(chosen).expanduser() if chosen is not None else None


def _offline_env() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in _OFFLINE_ENV)


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (a TCP connect to its endpoint; cached per process).

    False at once under HF_HUB_OFFLINE / HF_DATASETS_OFFLINE. Without this check an unreachable
    hub costs `datasets` ~25 s of retries per dataset before it fails.
    """
    if _offline_env():
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1]
    host, _, port = host.split("/")[0].partition(":")
    try:
        socket.create_connection((host, int(port or 443)), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def harness_only(run, benchmark: str) -> bool:
    """True when a score cannot mean anything: the toy model on a real (language) benchmark.

    Such a benchmark only proves the evaluation harness, so a run without its data skips it
    (with a note) instead of failing.
    """
    return run.model.name_or_path == "toy" and not catalog_entry(benchmark).generator


def unavailable_reason(name: str, data_dir: str | os.PathLike | None = None) -> str | None:
    """None when `load_dataset(name)` can load it here (generated, a local file, or the hub
    answers), else one line saying what is missing and how to provide it."""
    entry = catalog_entry(name)
    root = resolve_data_dir(data_dir)
    if entry.generator or (root is not None and entry.local and (root / entry.local).is_file()):
        return None
    if entry.hub and hub_reachable():
        return None
    where = f"{root / entry.local} does not exist" if root and entry.local else "no local copy"
    hub = "the hub is offline" if _offline_env() else "the hub does not answer"
    fix = (
        f"put {entry.local} under data/local/ or set {DATA_DIR_ENV}"
        if entry.local
        else "run once online so the Hugging Face cache holds it"
    )
    return f"{entry.name}: {where} and {hub if entry.hub else 'it has no hub id'}; {fix}"


def check_available(run, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Check, before step 01, that every dataset the run needs can be loaded here.

    Raises DataUnavailableError listing what is missing (the probe set, the curation pool, the
    benchmarks whose scores mean something). Benchmarks that are harness checks on the toy model
    are optional: returns {name: reason} for those that will be skipped.
    """
    needed = [("probe.dataset", run.probe.dataset), ("curation.pool", run.curation.pool)]
    needed += [("eval.benchmarks", b) for b in run.eval.benchmarks if not harness_only(run, b)]
    missing = [f"{where} {why}" for where, n in needed if (why := unavailable_reason(n, data_dir))]
    if missing:
        raise DataUnavailableError("the run needs data it cannot load here: " + "; ".join(missing))
    optional = [b for b in run.eval.benchmarks if harness_only(run, b)]
    return {b: why for b in optional if (why := unavailable_reason(b, data_dir))}


# ----------------------------------------------------------------------------- loaders
def _check(df: pd.DataFrame, name: str, on_invalid: str) -> pd.DataFrame:
    """Validate; raise, or drop the offending rows with the report logged and attached."""
    if on_invalid not in ("raise", "drop"):
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    report = validate(df, name=name)
    if not report.ok:
        if on_invalid == "raise":
            raise ValueError(report.message() + "\n(pass on_invalid='drop' to drop these rows)")
        log.warning("%s\n(dropped)", report.message())
        df = df.drop(index=df.index[report.bad_rows]).reset_index(drop=True)
    df.attrs["validation"] = report
    return df


def _read_jsonl(path: Path) -> pd.DataFrame:
    """A jsonl file as a frame; a file that is not UTF-8 or has a malformed line fails naming the
    file and the line (pandas' own errors name neither)."""
    try:
        return pd.read_json(path, lines=True, dtype=False)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(_jsonl_problem(path) or f"{path}: cannot read as jsonl ({exc})") from None


def _jsonl_problem(path: Path) -> str | None:
    """'<file>:<line>: what is wrong' for the first bad line of a jsonl file, else None."""
    import json

    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"{path}:{lineno}: not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                    f"{exc.start + 1}); re-encode the file as UTF-8"
                )
            if not line.strip():
                continue
            try:
                rec = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                return f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
            if not isinstance(rec, dict):
                return (
                    f"{path}:{lineno}: a jsonl row must be a JSON object, got {type(rec).__name__}"
                )
    return None


def _read_file(
    path: Path, fmt: str | None, column_map, source, id_column, answer_parser
) -> pd.DataFrame:
    """Read and normalise one file (no validation)."""
    fmt = fmt or {".jsonl": "jsonl", ".parquet": "parquet"}.get(path.suffix)
    if fmt not in FORMATS:
        raise ValueError(f"{path}: cannot tell the format; pass format= one of {FORMATS}")
    raw = _read_jsonl(path) if fmt == "jsonl" else pd.read_parquet(path)
    if fmt == "parquet" and {"prompt", "reward_model", "extra_info"} <= set(raw.columns):
        fmt = "verl"
    if fmt == "verl":
        return normalise_frame(read_verl(raw, source=source, default_source=path.stem))
    return to_schema(
        raw,
        source=source or path.stem,
        column_map=column_map,
        id_column=id_column,
        answer_parser=answer_parser,
    )


def load_file(
    path: str | os.PathLike,
    format: str | None = None,
    column_map: dict | None = None,
    source: str | None = None,
    *,
    id_column: str | None = None,
    answer_parser: str | None = None,
    on_invalid: str = "raise",
) -> pd.DataFrame:
    """Load a parquet, jsonl or verl-parquet file into the schema (format guessed if None).

    A parquet with prompt/reward_model/extra_info columns is read as verl. source defaults to
    the file stem (verl files written by to_verl carry their own).
    """
    path = Path(path)
    df = _read_file(path, format, column_map, source, id_column, answer_parser)
    df = _check(df, source or path.stem, on_invalid)
    df.attrs["origin"] = f"file:{path}"
    return df


def _hub_unavailable(entry: CatalogEntry, why: str) -> DataUnavailableError:
    if entry.local:
        fix = f"set {DATA_DIR_ENV} (or pass data_dir=) to a directory containing {entry.local}, or put it under data/local/"
    else:
        fix = f"this dataset has no local copy in the catalog: load it once online, or load a file you have with load_file(path); {DATA_DIR_ENV} cannot stand in for it"
    return DataUnavailableError(
        f"dataset {entry.name!r}: cannot load {entry.hub!r} from the Hugging Face hub ({why}); {fix}"
    )


def _load_hub(entry: CatalogEntry, split: str | None) -> pd.DataFrame:
    """The real datasets.load_dataset path (needs the network or a warm HF cache)."""
    import datasets  # lazy: importing datasets costs seconds

    # datasets reads HF_HUB_OFFLINE at import; if it was set later, calling it would retry the
    # network for ~25 s before failing, so fail now with the same message.
    if _offline_env() and not datasets.config.HF_HUB_OFFLINE:
        raise _hub_unavailable(entry, "offline mode is set (HF_HUB_OFFLINE)")
    if not _offline_env() and not hub_reachable():
        raise _hub_unavailable(entry, "the hub does not answer (no network?)")
    try:
        ds = datasets.load_dataset(entry.hub, entry.hub_config, split=split or entry.hub_split)
    except Exception as e:  # the hub fails in many types (ConnectionError, HfHubHTTPError, ...)
        raise _hub_unavailable(entry, f"{type(e).__name__}: {e}") from e
    id_col = entry.id_column if entry.hub_id_column is None else entry.hub_id_column
    columns = entry.columns if entry.hub_columns is None else entry.hub_columns
    return to_schema(
        ds.to_pandas(),
        source=entry.name,
        column_map=columns,
        id_column=id_col or None,
        answer_parser=entry.answer_parser,
    )


def _generate(entry: CatalogEntry, split: str | None, kwargs: dict) -> pd.DataFrame:
    """Generated datasets (the toy task): import the generator lazily and call it.

    toy_cfg (None: the generator's default world), n and seed are passed on, with any other
    keyword the generator takes (e.g. min_terms for the toy task).
    """
    module_name, func_name = entry.generator.split(":")
    module = importlib.import_module(module_name)
    cfg = kwargs.pop("toy_cfg", None)
    if "n" not in kwargs:
        raise TypeError(f"load_dataset({entry.name!r}) needs n= (how many problems to generate)")
    df = getattr(module, func_name)(cfg, split or "train", **{"seed": 0, **kwargs})
    return normalise_frame(
        df
    )  # the generator emits the schema; this adds `answers` and fixes the order


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    split: str | None = None,
    on_invalid: str = "raise",
    **generator_kwargs,
) -> pd.DataFrame:
    """Load a catalog dataset into the schema: local file if present, else the hub.

    limit keeps the first rows in source order (after validation). For generated entries
    (``toy``) pass toy_cfg=, n=, seed=; split then names the generated split.
    df.attrs["origin"] says where the rows came from, df.attrs["validation"] holds the report.
    """
    entry = catalog_entry(name)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 (or None for all rows), got {limit}")
    if generator_kwargs and not entry.generator:
        raise TypeError(f"load_dataset({name!r}): unexpected arguments {sorted(generator_kwargs)}")
    root = resolve_data_dir(data_dir)
    local = root / entry.local if root is not None and entry.local else None
    if entry.generator:
        df, origin = _generate(entry, split, dict(generator_kwargs)), f"generated:{entry.generator}"
    elif local is not None and local.is_file():
        df = _read_file(
            local,
            entry.local_format,
            entry.columns,
            entry.name,
            entry.id_column,
            entry.answer_parser,
        )
        origin = f"file:{local}"
    elif entry.hub:
        df, origin = _load_hub(entry, split), f"hub:{entry.hub}@{split or entry.hub_split}"
    else:
        where = f"{local} does not exist" if local else f"{DATA_DIR_ENV} is not set"
        raise FileNotFoundError(
            f"dataset {entry.name!r} is local-only ({entry.local}) and {where}; set {DATA_DIR_ENV} or pass data_dir= pointing at the directory that holds {entry.local}"
        )
    df = _check(df, entry.name, on_invalid)
    if limit is not None:
        df = df.head(limit).reset_index(drop=True)
    df.attrs.update(origin=origin, dataset=entry.name)
    return df
