"""DICOM retrieval: C-FIND/C-MOVE worker, research storage SCP, de-identification, synthetic data."""
