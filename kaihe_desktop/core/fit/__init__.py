"""What fits: llama.cpp's buffers estimated, placement and context planned, speed, quant picks, advice."""
