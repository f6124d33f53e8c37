"""Configuration: schema (``models``), value types (``types``) and the positioned loader."""

from .loader import config_from_dict as config_from_dict
from .loader import default_config_text as default_config_text
from .loader import load_config as load_config
from .loader import load_config_text as load_config_text
from .models import Config as Config
from .models import Limits as Limits
from .models import ListenerConfig as ListenerConfig

__all__ = [
    "Config",
    "Limits",
    "ListenerConfig",
    "config_from_dict",
    "default_config_text",
    "load_config",
    "load_config_text",
]
