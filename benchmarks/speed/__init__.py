"""Speed: ratios against a baseline measured in the same run, the machine named."""
