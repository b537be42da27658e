__import__("sys").modules[__name__] = __import__("runtime")  # `import dbos` gives `runtime`
