"""OcuPredict back-end."""
