"""What this computer is: RAM, CPU, GPUs, bandwidth, the llama.cpp build, tiers and saved profiles."""
