"""vae-train's launchers, where Hydra looks for them: it instantiates a launcher only from a module of the
hydra_plugins package (and imports each such module when it starts). Their code is in vae_lab.runtime.launcher."""
from importlib.util import find_spec

if find_spec("hydra_plugins.hydra_joblib_launcher"):  # installed with the `sweep` extra
    from vae_lab.runtime import launcher

    class JoblibLauncher(launcher.JoblibLauncher):
        """hydra/launcher=joblib (configs/hydra/launcher/joblib.yaml): Hydra's joblib launcher, stopping when told."""
