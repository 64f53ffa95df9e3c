"""`keypose`: one command for every part's scripts (`keypose stage2 train --config ...`)."""
