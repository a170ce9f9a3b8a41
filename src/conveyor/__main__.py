from conveyor.cli.app import main

if __name__ == "__main__":  # not when a spawned gateway process imports it
    main()
