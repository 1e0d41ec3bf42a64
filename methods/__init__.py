"""The methods almabench compares; each module registers one. Import order fixes nothing but the listing."""

from . import app, app_released, dense, gmp, imp, osp, rigl, scratch, set, shrink_perturb  # noqa: F401  (registration)
from .base import METHODS, Method, Setting, StepContext, build_method, register

__all__ = ["METHODS", "Method", "Setting", "StepContext", "build_method", "register"]
