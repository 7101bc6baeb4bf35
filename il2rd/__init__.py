"""il2rd: GPU-accelerated reaction-diffusion of interleukin 2 in lymph-node tissue.

The Python API (il2rd/api.py; README "Python API", examples/quickstart.py):

    il2rd.compose(*overrides, **keys)   the config the `il2rd` command would run
    il2rd.run(cfg, output_dir)          one run: a Result (file, field, summary, attribution)
    il2rd.load(path)                    a run's il2rd.h5, read lazily
    il2rd.make_figures(path, out, only) its figures
    il2rd.run_sweep(base, {key: [values]}, output_dir)   a sweep solved in vmapped batches

They are imported on first use, so `import il2rd` does not import JAX or Hydra.
"""

__version__ = "0.1.0"

_API = ("Sweep", "compose", "load", "make_figures", "override_text", "run", "run_sweep")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'il2rd' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_API})
