"""Datasets: the catalog and its loaders, the one schema, the one prompt format, verl's parquet."""

from polaris_lib.data.catalog import (
    CATALOG_PATH,
    DATA_DIR_ENV,
    LOCAL_DATA_DIR,
    CatalogEntry,
    DataUnavailableError,
    UnknownDatasetError,
    catalog_entry,
    check_available,
    check_names,
    harness_only,
    hub_reachable,
    list_datasets,
    load_dataset,
    load_file,
    resolve_data_dir,
    unavailable_reason,
)
from polaris_lib.data.overlap import (
    DataOverlapError,
    check_no_overlap,
    overlaps,
    problem_key,
)
from polaris_lib.data.prompt import (
    INSTRUCTION_SUFFIX,
    apply_suffix,
    build_messages,
    prompt_texts,
    strip_suffix,
)
from polaris_lib.data.schema import (
    ANSWER_PARSERS,
    ValidationReport,
    gold_answers,
    normalise_answer,
    to_schema,
    validate,
)
from polaris_lib.data.verl import read_verl, to_verl
