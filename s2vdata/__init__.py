"""s2vdata: turn fixed-camera videos whose sound is caused by motion into 4-second training clips."""

__version__ = "0.1.0"
