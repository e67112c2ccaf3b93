from notifq.cli import main

main()
