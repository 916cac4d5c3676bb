"""Multi-process start-up: ``jax.distributed.initialize`` from flags or the environment.

- Cloud TPU pod slices (and SLURM / Open MPI / Kubernetes jobs JAX knows): pass
  ``--distributed`` and JAX detects the coordinator, process count and id itself.
- Anything else (e.g. several processes on one GPU host, or CPU tests): give
  ``--coordinator_address``, ``--num_processes`` and ``--process_id`` (or the environment
  variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), and
  optionally ``--local_device_ids``.
Nothing is initialised for a plain single-process run.

A process that dies (host failure, SIGKILL) stops sending heartbeats; after
``heartbeat_timeout_s`` the coordination service reports it and every survivor exits with an
error instead of waiting for it in a collective for ever (docs/reliability.md). Rerunning all
processes resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import os

import jax


def initialize(*, distributed: bool = False, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: str | None = None, heartbeat_timeout_s: int = 100) -> bool:
  """Calls ``jax.distributed.initialize`` when asked to; returns whether it did."""
  env = os.environ
  coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
  if num_processes is None and env.get("JAX_NUM_PROCESSES"):
    num_processes = int(env["JAX_NUM_PROCESSES"])
  if process_id is None and env.get("JAX_PROCESS_ID"):
    process_id = int(env["JAX_PROCESS_ID"])
  if not (distributed or coordinator_address):
    return False
  ids = [int(i) for i in local_device_ids.split(",")] if local_device_ids else None
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id, local_device_ids=ids,
                             heartbeat_timeout_seconds=int(heartbeat_timeout_s))
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def align_processes(name: str, timeout_s: int = 1800) -> None:
  """Waits until every process reaches ``name`` (a coordination-service barrier, no collective).

  Before the first cross-process collective: on CPU, Gloo's rendezvous gives up after 30 s, so a
  process that compiled from a warm cache must not run that far ahead of a peer still compiling.
  """
  if jax.process_count() > 1:
    from orbax.checkpoint import multihost  # pylint: disable=g-import-not-at-top
    multihost.sync_global_processes(name, timeout=timeout_s)
