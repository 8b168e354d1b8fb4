"""A Dynaconf-backed `structum_lab.config.ConfigProvider`.

::

    from structum_lab.config import set_config_provider
    from structum_lab.plugins.dynaconf import DynaconfConfigProvider

    provider = DynaconfConfigProvider(root_path=".")
    provider.auto_discover()
    set_config_provider(provider)

Layout and precedence are described on `DynaconfConfigProvider` and in the README.
"""

from ._provider import DynaconfConfigProvider
from ._version import __version__

__all__ = ["DynaconfConfigProvider", "__version__"]
