"""python -m vae_lab.compare: the vae-compare command."""
import sys

from vae_lab.compare import main

sys.exit(main())
