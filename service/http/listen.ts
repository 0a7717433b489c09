/**
 * Why a server of this process could not listen, as one line naming the variable to change (`HOST`, or the
 * port's variable) and the system's cause; undefined for an error that is not about listening.
 */
export function listenFailure(
  err: unknown,
  { portVariable, port, host }: { portVariable: 'PORT' | 'METRICS_PORT'; port: number; host: string },
): string | undefined {
  const { code, syscall, message } = (err ?? {}) as NodeJS.ErrnoException;
  if (syscall === 'getaddrinfo')
    return `HOST ${JSON.stringify(host)} cannot be resolved to an address (${code}); ${portVariable} ${port} is not open`;
  if (syscall !== 'listen') return undefined;
  switch (code) {
    case 'EADDRINUSE':
      return `${portVariable} ${port} is already in use on HOST ${host} (EADDRINUSE)`;
    case 'EACCES':
      return `${portVariable} ${port} on HOST ${host} needs a privilege this process does not have (EACCES)`;
    case 'EADDRNOTAVAIL':
      return `HOST ${JSON.stringify(host)} is not an address of this machine (EADDRNOTAVAIL); ${portVariable} ${port} is not open`;
    default:
      return `${portVariable} ${port} on HOST ${host} cannot be opened: ${message}`;
  }
}
