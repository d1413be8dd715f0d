"""The detectors of a run: the default model's and the models some cameras name for themselves.

A bureau that fine-tuned a model on one district's cameras (``streetwatch datasets self-label``, the site recipe)
gives those cameras ``model: models/site-north`` and keeps the default model for the rest. The pool loads each
weights file once, on first use, and hands every camera the detector of its model; analyze and serve share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from detector.backends.base import DetectorBackend, model_file


def weights_key(model: Path) -> tuple[Path, int, int]:
    """The weights file a model path names (a model folder stands for its ``model.onnx``) as it is now: its path,
    modification time and size. A file replaced by new weights (a site model fine-tuned again) is a new key."""
    path = model_file(model).resolve()
    try:
        stat = path.stat()
    except OSError:
        return path, 0, 0
    return path, stat.st_mtime_ns, stat.st_size


class ModelPool:
    """Detector backends by weights file: ``default`` for cameras without a model of their own, the others loaded
    by ``load`` on first use (thread-safe: the service adds cameras from API requests). A model file replaced
    since it was loaded is loaded again for the cameras added or changed after that; running cameras keep the
    weights they started with (the pool forgets the older version; the default model is always kept).

    Args:
        default: The run's detector (``--model``, or the service's ``model.path``).
        default_path: Its weights file or model folder.
        load: Makes a backend for another model path (the run's settings: threshold, input size, threads).
    """

    def __init__(self, default: DetectorBackend, default_path: Path,
                 load: Callable[[Path], DetectorBackend]) -> None:
        self.default = default  # held here too: a new version of its file never replaces the run's model
        self._load = load
        self._backends: dict[tuple[Path, int, int], DetectorBackend] = {weights_key(default_path): default}
        self._lock = threading.Lock()

    def backend(self, model: Path | None) -> DetectorBackend:
        """The detector of ``model`` (None: the default), loaded once.

        Raises:
            ModelLoadError: The model file is missing or cannot be loaded.
        """
        if model is None:
            return self.default
        key = weights_key(model)
        with self._lock:  # loading under the lock: two cameras naming one new model load it once
            found = self._backends.get(key)
            if found is not None:
                return found
            backend = self._load(model)
            for old in [k for k in self._backends if k[0] == key[0]]:  # an older version of the file: the cameras
                del self._backends[old]  # running on it hold it, and it goes with the last of them
            self._backends[key] = backend
            return backend
