from vlmalign.cli import main

main()
