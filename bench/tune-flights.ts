export async function flightsBench(_parts: string[]): Promise<Record<string, unknown>> {
  return {};
}
