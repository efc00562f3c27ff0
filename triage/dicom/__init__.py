"""DICOM input and output: reading radiographs, eligibility, writing segmentations."""
