// Self-signed certificates for TLS tests and benchmarks, made with the `openssl` command.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'

export interface SelfSigned {
  cert: string
  key: string
  certFile: string
  keyFile: string
}

/** A self-signed certificate for `san` (`IP:…` or `DNS:…`) and its key, written into `dir`. */
export function selfSigned(dir: string, san: string): SelfSigned {
  const [certFile, keyFile] = ['cert', 'key'].map((f) => path.join(dir, `${san.replace(/\W/g, '_')}.${f}.pem`))
  execFileSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=test',
    '-addext',
    `subjectAltName=${san}`,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ], { stdio: 'ignore' })
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile }
}

/** Whether the `openssl` command is there. */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
