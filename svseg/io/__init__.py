"""svseg's one I/O layer: every file svseg writes goes through here.

**Atomic files.** A long run can be killed at any moment (preemption, out-of-memory killer, power
loss). Every writer therefore writes a temporary file ``.<name>.<random>.tmp[<suffix>]`` in the
destination folder, flushes and ``fsync``-s it, and only then renames it over the destination with
:func:`os.replace` (atomic within one file system on POSIX and Windows) and syncs the folder. A
reader sees the complete old file or the complete new file, never a truncated one; if the writer
raises, the temporary file is removed and the old file is kept. A process killed mid-write can
leave a temporary file behind; the pattern above lets a cleaner find it (``.<name>.*.tmp*``).
Whole output trees are built in a temporary sibling folder and renamed at the end
(:class:`AtomicDirectory`).

**Permissions.** New files and folders get the permissions any new file gets (``0o666`` /
``0o777`` minus the umask, e.g. ``0644``), not the ``0600`` of :func:`tempfile.mkstemp`.

**JSON policy** (:func:`to_json_safe`, used by every JSON writer of svseg): files are strict JSON,
readable by any parser. NaN (undefined, e.g. the Dice of a class absent from the reference)
becomes ``null``; +inf / -inf become the strings ``"inf"`` / ``"-inf"`` (an HD95 of inf means a
class was missed entirely, a meaningful value that ``null`` would hide); numpy scalars and arrays,
tensors, tuples and sets become plain numbers and lists; paths become strings.

**Case ids.** :func:`case_name` is the one rule for "the case id of a file name" (``case01.nii.gz``
-> ``case01``); :func:`match_files` pairs prediction and reference files (NIfTI or 2D) by case id.

Writers: :func:`atomic_write` (text/binary file object), :func:`atomic_path` (a temporary path
for writers that open files themselves), :func:`atomic_save_text`, :func:`atomic_save_json`,
:func:`atomic_save_csv`, :func:`atomic_save_figure`, :func:`atomic_save_png`,
:func:`atomic_save_nifti`, :func:`atomic_save_npz`, :func:`atomic_save_h5`,
:func:`atomic_torch_save`. Readers: :func:`load_nifti`, :func:`read_image_2d` (2D image files and masks by
svseg's mask rule), :func:`read_dicom_series` / :func:`dicom_to_nifti` (one checked DICOM series folder,
:mod:`svseg.io.dicom`).

This package imports nothing else from svseg, and no heavy library at import time (nibabel,
h5py, PIL, torch are imported by the functions that need them).

Example::

    from svseg.io import atomic_write, atomic_torch_save, atomic_save_json

    with atomic_write("out/metrics.csv", "w") as f:
        f.write("case,dice\\n")
    atomic_torch_save({"network": net.state_dict()}, "out/checkpoint_latest.pt")
    atomic_save_json({"mean_dice": 0.8, "hd95": float("inf")}, "out/summary.json")  # "hd95": "inf"
"""

from __future__ import annotations

from svseg.io import atomic, cases, dicom, formats, images2d
from svseg.io.atomic import *  # noqa: F403
from svseg.io.cases import *  # noqa: F403
from svseg.io.dicom import *  # noqa: F403
from svseg.io.formats import *  # noqa: F403
from svseg.io.images2d import *  # noqa: F403

# the package's API is the union of its modules' __all__, each name listed once, where it is defined
__all__: list[str] = []
__all__ += atomic.__all__
__all__ += formats.__all__
__all__ += cases.__all__
__all__ += images2d.__all__
__all__ += dicom.__all__
