"""App specs: the `spec.yaml` model, param checking and the spec catalogue."""

from orun.spec.catalog import SpecCatalog
from orun.spec.model import ParamSpec, RoutingSpec, Spec, load_spec_dir
from orun.spec.params import env_value, resolve_params

__all__ = [
    "ParamSpec",
    "RoutingSpec",
    "Spec",
    "SpecCatalog",
    "env_value",
    "load_spec_dir",
    "resolve_params",
]
