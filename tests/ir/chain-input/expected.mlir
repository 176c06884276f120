// Dataflow graph of @g: 4 nodes, 3 streams, 0 fusion group(s)
dataflow.graph @g(%x: tensor<1x64xf32>) -> (@dma_out_to_output) {
  %x2 = itensor_instance : !itensor<1x4x4xf32, tensor 1x8x8, [2, 2] * [4, 4], (d0, d1) -> (0, d1, d0)>  // conv_dma_x_to_negate_1 -> negate_1
  %y = itensor_instance : !itensor<1x4x4xf32, tensor 1x8x8, [2, 2] * [4, 4], (d0, d1) -> (0, d0, d1)>  // negate_1 -> dma_out_to_output
  %x2_packed = itensor_instance : !itensor<1x4x4xf32, tensor 1x8x8, [2, 2] * [4, 4], (d0, d1) -> (0, d0, d1)>  // dma_x_to_negate_1 -> conv_dma_x_to_negate_1
  dma_read @dma_x_to_negate_1() -> (%x2_packed) {tensor = %x : tensor<1x64xf32>, role = input} {
    %x2 = tensor.expand_shape %x [[0], [1, 2]] : tensor<1x64xf32> -> tensor<1x8x8xf32>
  }
  itensor_converter @conv_dma_x_to_negate_1(%x2_packed) -> (%x2) {buffer = 1x1x8x8, shared_loops = 0, bytes = 256, reason = "dma_x_to_negate_1 reads %x in the packing of the block's output, so that a layer reads the previous layer's output buffer: loop 0 walks dim(s) [2] x2 in the result but [1] in the source (tiles in another order)"}
  kernel @negate_1(%x2) -> (%y) {tiles = [d0: 1x1/u1, d1: 2x4/u1, d2: 2x4/u1], tile_order = [0, 1, 2], point_order = [0, 1, 2], operands = [0]} {
    %y = linalg.generic @negate_1 {domain = [1, 8, 8], indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%x2 : tensor<1x8x8xf32>) outs(%e : tensor<1x8x8xf32>) {
    ^bb0(%x: f32, %o: f32):
      %r = arith.negf %x : f32
      linalg.yield %r
    } -> tensor<1x8x8xf32>
  }
  dma_write @dma_out_to_output(%y) -> () {tensor = %out : tensor<1x64xf32>, role = output} {
    %out = tensor.collapse_shape %y [[0], [1, 2]] : tensor<1x8x8xf32> -> tensor<1x64xf32>
  }
}
