"""Worker-side tools: the vLLM simulator and real vLLM pool launch configs."""
