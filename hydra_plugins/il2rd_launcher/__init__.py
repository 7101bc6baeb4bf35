"""Hydra launcher plugin of il2rd: `hydra/launcher=il2rd_batched` solves a multirun as vmapped batches."""
