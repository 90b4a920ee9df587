"""The methods the evaluation scores and the names of their metrics: one vocabulary for scoring and report."""

from __future__ import annotations

from unmask.imaging.classical_inpainting import INPAINT_METHODS

#: Metrics reported per image and averaged, for every method.
METRIC_NAMES = ("psnr", "ssim", "psnr_mask", "ssim_mask", "l1", "l1_mask", "psnr_outside")
#: With ``evaluate.identity``: embedding distance to the ground truth, and 1.0 where it is under dlib's 0.6.
IDENTITY_NAMES = ("identity_distance", "same_person")
#: Column / key prefix of each method; our model keeps the bare names DVC and MLflow have always had.
METHOD_PREFIXES = {"model": "", "input": "input_", "telea": "telea_", "navier_stokes": "navier_stokes_"}
#: The OpenCV inpainting methods, given the true mask.
BASELINES = tuple(INPAINT_METHODS)
#: PSNR of a perfect image is infinite; averages use this cap so one such image does not hide the rest.
PSNR_CAP = 100.0
