@description('The location for the resource(s) to be deployed.')
param location string = resourceGroup().location

resource cache 'Microsoft.Cache/redis@2024-11-01' = {
  name: take('cache-${uniqueString(resourceGroup().id)}', 63)
  location: location
  properties: {
    sku: {
      name: 'Premium'
      family: 'P'
      capacity: 2
    }
    enableNonSslPort: false
    disableAccessKeyAuthentication: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Disabled'
    redisConfiguration: {
      'aad-enabled': 'true'
      'maxmemory-policy': 'allkeys-lru'
    }
  }
  zones: [
    '1'
    '2'
  ]
  tags: {
    'aspire-resource-name': 'cache'
    team: 'shop'
  }
}

output connectionString string = '${cache.properties.hostName},ssl=true'

output name string = cache.name

output hostName string = cache.properties.hostName
