"""Model backends behind small protocols: speech recognisers, vision-language and text-generation
engines (transformers, vLLM), and the video prompts the Qwen-VL extractors share."""
