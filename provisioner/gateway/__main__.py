from provisioner.gateway.app import main

main()
