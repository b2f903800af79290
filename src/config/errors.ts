/** A problem with the user's configuration: one line that names the file and the field. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}
