fn main() -> anyhow::Result<()> {
    herald::cli::main()
}
