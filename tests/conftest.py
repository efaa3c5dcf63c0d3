import os
import tempfile

import pytest
import torch

# Jupyter, IPython and matplotlib write into $HOME; keep tests out of it.
_home = tempfile.mkdtemp(prefix="wb-test-home-")
for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
    os.environ.setdefault(var, os.path.join(_home, var.lower()))

# Two test workers share the CI machine's cores: one torch thread each, here and in the CLI processes they start
# (the workbench's own default is every core available).
os.environ["WORKBENCH_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture
def tmp_run(tmp_path):
    return tmp_path / "run"
