"""Wire formats: the Open Inference Protocol (``oip``) and the friendly V1 predict protocol (``v1``)."""
