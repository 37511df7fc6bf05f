"""vae-train's launchers, where Hydra looks for them: it instantiates a launcher only from a module of the
hydra_plugins package (and imports each such module when it starts). Their code is in vae_lab.runtime.launcher.

Hydra finds this module by listing the hydra_plugins namespace (pkgutil.iter_modules), which an editable install
(`pip install -e .`) cannot answer: setuptools' finder maps this package to a placeholder path that lists nothing,
and hydra/launcher=joblib would end in "Unknown plugin class". vae-train's main() therefore registers LAUNCHERS
itself (register_launchers) before Hydra starts; under a wheel install Hydra's scan finds them as well."""
from importlib.util import find_spec

from vae_lab.runtime import stacked_launcher  # noqa: E402


class StackedLauncher(stacked_launcher.StackedLauncher):
    """hydra/launcher=stacked (configs/hydra/launcher/stacked.yaml): a sweep's jobs trained as stacks of models."""


LAUNCHERS = (StackedLauncher,)  # the classes to register; joblib's only with the `sweep` extra

if find_spec("hydra_plugins.hydra_joblib_launcher"):  # installed with the `sweep` extra
    from vae_lab.runtime import launcher

    class JoblibLauncher(launcher.JoblibLauncher):
        """hydra/launcher=joblib (configs/hydra/launcher/joblib.yaml): Hydra's joblib launcher, stopping when told."""

    LAUNCHERS = (*LAUNCHERS, JoblibLauncher)


def register_launchers():
    """Registers LAUNCHERS with Hydra's plugin registry, under the names the configs' _target_ give them
    (hydra_plugins.vae_lab_launcher.<class>), whether or not Hydra's scan found this module."""
    from hydra.core.plugins import Plugins

    for cls in LAUNCHERS:
        Plugins.instance().register(cls)
