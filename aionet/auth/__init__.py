"""Authentication services beside the handlers: the user store and the auth portal.

* ``users``  — the argon2id user store (YAML file, positioned errors, atomic writes).
* ``portal`` — ``Portal.authenticate`` for every protocol, with failure throttling.
* ``cli``    — ``aionet users add|passwd|remove|list``.
"""

from .portal import AuthCounters as AuthCounters
from .portal import Credentials as Credentials
from .portal import Portal as Portal
from .portal import ThrottleConfig as ThrottleConfig
from .portal import Verifier as Verifier
from .users import UnknownUserError as UnknownUserError
from .users import User as User
from .users import UserRecord as UserRecord
from .users import UsersFile as UsersFile
from .users import UserSnapshot as UserSnapshot
from .users import UserStore as UserStore

__all__ = [
    "AuthCounters",
    "Credentials",
    "Portal",
    "ThrottleConfig",
    "UnknownUserError",
    "User",
    "UserRecord",
    "UserSnapshot",
    "UserStore",
    "UsersFile",
    "Verifier",
]
