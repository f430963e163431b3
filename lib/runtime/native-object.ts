// The TypeScript side of an object the addon owns (a trainer, a fine-tuner): dispose() frees its
// native memory at once, and every later use throws an error that names dispose() and how to get
// another, before the call reaches the addon.

export abstract class NativeObject<Handle extends { dispose(): void }> {
  private disposed = false;

  /** kind: the class's name in the errors ("Trainer": "create another with Trainer.create()"). */
  protected constructor(
    private readonly nativeHandle: Handle,
    private readonly kind: string,
  ) {}

  /** The native object, or an error naming dispose() once it was called. */
  protected get handle(): Handle {
    if (this.disposed) throw new Error(`this ${this.kind} was disposed; create another with ${this.kind}.create()`);
    return this.nativeHandle;
  }

  /**
   * Frees the network and its optimiser state now (GPU memory included), or when the calls already
   * queued have run; later calls throw. Also `Symbol.dispose`, for `using` declarations.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.nativeHandle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }
}
