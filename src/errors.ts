// The one error type commands throw to end with a message: cli.ts prints `error: <message>` (one line, no stack
// unless PUFFGRES_LOG=debug) and exits with `exitCode`.

export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
  }
}
