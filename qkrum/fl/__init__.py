"""Federated-learning simulation: datasets, client partitions, flax models, vmapped local
training, Byzantine clients and the server loop that selects with :func:`qkrum.select`.

Importing it needs only qkrum's core install; running a simulation (building a model, the
offline ``digits`` dataset) needs the ``fl`` extra (``pip install 'qkrum[fl]'``: flax,
scikit-learn, tqdm) and :func:`plot_runs` the ``plot`` extra (matplotlib). Without them they
raise an ImportError that names the extra."""

from qkrum.fl.data import DATASETS, DataIntegrityError, Dataset, default_data_dir, load_dataset
from qkrum.fl.models import Model, model_for, num_params
from qkrum.fl.partition import PARTITIONS, partition, partition_summary
from qkrum.fl.plot import plot_runs
from qkrum.fl.simulation import (ATTACK_NAMES, ROUND_KEYS, History, available_methods, read_run,
                               selection_aggregator, simulate)
from qkrum.fl.training import LocalConfig, local_trainer

__all__ = ["ATTACK_NAMES", "DATASETS", "PARTITIONS", "ROUND_KEYS", "DataIntegrityError", "Dataset", "History",
           "LocalConfig", "Model", "available_methods", "default_data_dir", "load_dataset", "local_trainer",
           "model_for", "num_params", "partition", "partition_summary", "plot_runs", "read_run",
           "selection_aggregator", "simulate"]
