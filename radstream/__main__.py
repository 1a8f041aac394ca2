from radstream.cli import main

main()
