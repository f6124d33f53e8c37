"""Configuration: schema (``models``), value types (``types``), the positioned YAML reader
(``source``) and the loader. ``load_config``/``load_config_text``/``config_from_dict``, which
also resolve each listener's handler, are the core's (``aionet.core.preflight``, re-exported by
``aionet``)."""

from .loader import default_config_text as default_config_text
from .models import Config as Config
from .models import Limits as Limits
from .models import ListenerConfig as ListenerConfig

__all__ = [
    "Config",
    "Limits",
    "ListenerConfig",
    "default_config_text",
]
