"""Requests: one frozen dataclass per operation, the only home of defaults, limits and choices.

A leaf: nothing here imports the method (``registry`` names the registered choices). ``base`` holds the
``Request`` behaviour (JSON round trip, limits, choices) and the settings several operations
share; ``operations`` the operations' requests. Both are re-exported here, so callers write
``from tanas_core.requests import DistanceRequest``.
"""
from tanas_core.requests.base import (
                                      CUSTOM_SUITE,
                                      HEADS,
                                      METHODS,
                                      METRICS,
                                      MIXTURES,
                                      PARAMS,
                                      REFERENCES,
                                      SPACES,
                                      VIEWS,
                                      WEIGHT_STEPS,
                                      DistanceSettings,
                                      FisherConfig,
                                      MeasurementSettings,
                                      Request,
                                      SearchBudget,
                                      parse_archs,
                                      parse_names,
                                      split_target,
)
from tanas_core.requests.operations import (
                                      ClosestSettings,
                                      CompareRequest,
                                      DemoRequest,
                                      DistanceRequest,
                                      SearchRequest,
                                      ValidateRequest,
                                      ZooRequest,
                                      ZooSearchRequest,
)

__all__ = ["CUSTOM_SUITE", "HEADS", "METHODS", "METRICS", "MIXTURES", "PARAMS", "REFERENCES", "SPACES", "VIEWS",
           "WEIGHT_STEPS",
           "DistanceSettings", "FisherConfig", "MeasurementSettings", "Request", "SearchBudget", "parse_archs",
           "parse_names", "split_target",
           "ClosestSettings", "CompareRequest", "DemoRequest", "DistanceRequest", "SearchRequest", "ValidateRequest",
           "ZooRequest", "ZooSearchRequest"]
