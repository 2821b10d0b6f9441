.PHONY: demo test setup
demo:
	bash scripts/run.sh demo
test:
	bash scripts/run.sh test
setup:
	bash scripts/run.sh setup
