"""Embed edgeft in your own program: classify frames from a camera with a bundle.

    python deploy/example_classify.py BUNDLE [CAMERA_INDEX_OR_VIDEO]

Needs only edgeft's runtime (numpy, Pillow, OpenCV, onnxruntime or TensorRT): no torch.
"""

import sys

import cv2

from edgeft.runtime import Classifier

clf = Classifier.load(sys.argv[1])  # picks the best artifact this machine can run
print("running", clf.describe())
source = sys.argv[2] if len(sys.argv) > 2 else "0"
cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
while True:
    ok, frame = cap.read()
    if not ok:
        break
    result = clf.classify(frame, top_k=3, channel_order="BGR")  # OpenCV frames are BGR
    print(
        f"{result.label:<20} {result.prob:.3f}   "
        + ", ".join(f"{lb} {p:.2f}" for lb, p in result.top[1:])
    )
cap.release()
clf.close()
