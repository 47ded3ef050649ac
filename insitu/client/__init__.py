"""A Python client for an insitu gateway: results as pandas DataFrames.

    from insitu.client import Client
    with Client("http://127.0.0.1:8000", token) as gw:
        gw.catalogue()                                   # datasets
        df = gw.submit("residents-dp", {"born_since": 1960})   # estimate, lower, upper
        gw.estimate("residents-dp", {"born_since": 1960}).cost_rho

Problems become typed errors (`insitu.client.errors`); 503 and 429 answers are retried with
backoff, honouring `Retry-After`.
"""

from insitu.client.api import Client, Estimate
from insitu.client.errors import (
    BudgetExhausted,
    Conflict,
    Denied,
    Gone,
    InsituError,
    InvalidInput,
    JobNotReleased,
    NotFound,
    ProblemError,
    TooManyRequests,
    TransportError,
    Unauthenticated,
    Unavailable,
)
from insitu.client.frames import Released

__all__ = [
    "BudgetExhausted",
    "Client",
    "Conflict",
    "Denied",
    "Estimate",
    "Gone",
    "InsituError",
    "InvalidInput",
    "JobNotReleased",
    "NotFound",
    "ProblemError",
    "Released",
    "TooManyRequests",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
]
