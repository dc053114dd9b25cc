"""Training objectives. Each is a class registered under the entry-point group
``bco_platform.objectives``; nothing here imports Ray, DeepSpeed or MLflow."""

from objectives.base import (
    BinaryLogps,
    DataShape,
    LocalReducer,
    Objective,
    ObjectiveConfig,
    ObjectiveOutput,
    PreferenceLogps,
    Reducer,
    RowSample,
    RowWeighter,
    global_mean,
    global_mean_value,
)

__all__ = [
    "BinaryLogps",
    "DataShape",
    "LocalReducer",
    "Objective",
    "ObjectiveConfig",
    "ObjectiveOutput",
    "PreferenceLogps",
    "Reducer",
    "RowSample",
    "RowWeighter",
    "global_mean",
    "global_mean_value",
]
